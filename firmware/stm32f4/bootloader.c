/*
 * A minimal bootloader for the STM32F4 (the `bootloader` build): at 0x08000000, it prints one line
 * on USART2 and starts the application whose vector table is at 0x08020000 (flash sector 5), as a
 * bootloader on the chip does: VTOR, then the application's stack pointer and reset vector.
 * With no application there (blank flash) it says so and sleeps.
 */
#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))
#define RCC_APB1ENR REG(0x40023840)
#define USART2_SR   REG(0x40004400)
#define USART2_DR   REG(0x40004404)
#define USART2_BRR  REG(0x40004408)
#define USART2_CR1  REG(0x4000440C)
#define SCB_VTOR    REG(0xE000ED08)
#define APP_BASE    0x08020000u

static void say(const char *s)
{
    while (*s) {
        while (!(USART2_SR & (1u << 7)))
            ;
        USART2_DR = (uint8_t)*s++;
    }
}

/* Names this build in its image (the test stand-in recognises it by this string). */
__attribute__((used)) static const char marker[] = "jumpstarter-renode-fw bootloader app=0x08020000";

extern uint32_t __stack_top[];

void reset_handler(void);
void reset_handler(void)
{
    (void)*(volatile const char *)marker; /* referenced: --gc-sections keeps it */
    RCC_APB1ENR |= 1u << 17;
    USART2_BRR = 0x45;
    USART2_CR1 = (1u << 13) | (1u << 3);
    uint32_t sp = REG(APP_BASE), entry = REG(APP_BASE + 4);
    if (sp == 0xFFFFFFFFu || entry == 0xFFFFFFFFu) {
        say("bootloader: no application at 0x08020000\r\n");
        for (;;)
            __asm__ volatile("wfi");
    }
    say("bootloader: starting the application at 0x08020000\r\n");
    SCB_VTOR = APP_BASE;
    __asm__ volatile("msr msp, %0\n\tbx %1" : : "r"(sp), "r"(entry) : "memory");
    for (;;)
        ;
}

__attribute__((section(".vectors"), used))
static void (*const vectors[2])(void) = {(void (*)(void))__stack_top, reset_handler};
